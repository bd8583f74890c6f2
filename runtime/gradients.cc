// gradients: being written
