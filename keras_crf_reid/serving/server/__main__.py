"""`python -m keras_crf_reid.serving.server`: the development server's command line
(launch.main)."""
from keras_crf_reid.serving.server.launch import main

if __name__ == "__main__":
    main()
