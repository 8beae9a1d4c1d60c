"""Lesson 11's Flower app: ``client_app.app`` and ``server_app.app``, thin wrappers around fedlab.flower.core."""
