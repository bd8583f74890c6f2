// autodiff: being written
