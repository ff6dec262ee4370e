"""What people send, turned into model input: sniffing and limits, images, audio, text, PDFs,
videos, the decoded-file cache, zip archives, speech recognition calls, and a conversation's
model messages. Imports config, history and model; never gradio, tasks, v1 or page."""
