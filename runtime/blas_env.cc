// blas_env: being written
