"""The gRPC baseline: a bare grpclib ModelsService answering with constant, pre-built messages."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from grpclib.server import Server

from model_manager.proto.llmariner.models.server import v1 as pb


class Constant(pb.ModelsServiceBase):
    def __init__(self, model: pb.Model, listing: pb.ListModelsResponse) -> None:
        self.model = model
        self.listing = listing

    async def get_model(self, message: pb.GetModelRequest) -> pb.Model:
        return self.model

    async def list_models(self, message: pb.ListModelsRequest) -> pb.ListModelsResponse:
        return self.listing


async def main(model: pb.Model, listing: pb.ListModelsResponse, port: int) -> None:
    server = Server([Constant(model, listing)])
    await server.start("127.0.0.1", port)
    await server.wait_closed()


if __name__ == "__main__":
    model = pb.Model.parse(Path(sys.argv[1]).read_bytes())
    listing = pb.ListModelsResponse.parse(Path(sys.argv[2]).read_bytes())
    asyncio.run(main(model, listing, int(sys.argv[3])))
