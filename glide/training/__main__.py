from glide.training.trainer import main

main()
