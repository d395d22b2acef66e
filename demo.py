"""agejax web demo, the app file of the Hugging Face Space: python demo.py [--host H] [--port P] [--share]

The app is agejax/app/app.py (also the console script agejax-demo).
"""

from agejax.app.app import main

if __name__ == "__main__":
    main()
