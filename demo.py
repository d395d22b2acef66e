"""agejax web demo, the app file of the Hugging Face Space: python demo.py [--host H] [--port P] [--share]

The app is agejax/demo.py (also the console script agejax-demo).
"""

from agejax.demo import main

if __name__ == "__main__":
    main()
