"""nginx in front of the services: `python -m deploy.nginx.render` writes the config."""
