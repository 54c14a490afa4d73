"""The web console: serves the built single-page app, the session login API and the
decision playground's dry run."""
