// graph_builder: being written
