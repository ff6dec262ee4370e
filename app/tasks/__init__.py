"""The jobs: the reply loop, describe levels, the content check, batch runs and metadata
writing. Imports intake, config, history and model; never gradio, v1 or page."""
