from services.common.server import main
from services.tts.app import make_app

if __name__ == "__main__":
    main("tts", make_app)
