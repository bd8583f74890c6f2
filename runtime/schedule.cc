// schedule: being written
