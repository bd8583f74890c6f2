// executor: being written
