"""The loader: claims requested models through the worker API and moves their files into the object store."""
