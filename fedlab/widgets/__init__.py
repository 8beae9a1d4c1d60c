"""Interactive widgets for the lessons (ipywidgets); the only part of fedlab that imports a widget toolkit."""
