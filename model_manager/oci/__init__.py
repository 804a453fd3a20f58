"""OCI registries: the distribution protocol (auth, blobs, manifests) and the ModelPack artifact format."""
