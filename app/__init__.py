"""The Loupe web app: everything a person sees and touches (no torch or transformers here)."""
