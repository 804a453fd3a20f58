"""Object stores: a local directory (the embedded default) and S3. The only package that imports aiobotocore."""
