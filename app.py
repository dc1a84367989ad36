"""Start the GLIDE Gradio demo: `python app.py --help` lists the options (host, port, model, limits...)."""
from demo.app import main

if __name__ == "__main__":
    main()
