"""A FastAPI recipe: enqueue in the request's own transaction; work in-process or apart.

See README.md in this folder. ``jobs`` holds the App (imported by the web app and by
``actorq worker``); ``app`` holds the FastAPI application.
"""
