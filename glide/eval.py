"""`python -m glide.eval`: the shapes family's evaluation (glide.evaluation.shapes), under the name its reports record."""
from glide.evaluation.shapes import main

if __name__ == "__main__":
    main()
