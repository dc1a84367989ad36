"""`python -m glide.train_default` (`make train-default`): the shipped family's training recipe (glide.training.default),
under the name its model card records."""
from glide.training.default import main

if __name__ == "__main__":
    main()
