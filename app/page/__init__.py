"""The page: the only package that imports Gradio. Layout by region, the event wiring, the named
Gradio API, the batch view, display, status, zoom, desktop and voice. Imports every floor below."""
