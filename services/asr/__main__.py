from services.common.server import main

from .app import make_app

if __name__ == "__main__":
    main("asr", make_app)
