// json: being written
