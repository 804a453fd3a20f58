"""The loader's one view of the worker API: the servicer object in role "all", the grpclib stub in role "loader".

Both have the same method names and messages and both raise GRPCError, so the loader code is the same.
"""

from __future__ import annotations

from typing import Protocol

from model_manager.proto.llmariner.models.server import v1 as pb


class WorkerApi(Protocol):
    async def get_storage_config(self, message: pb.GetStorageConfigRequest) -> pb.StorageConfig: ...

    async def create_storage_config(self, message: pb.CreateStorageConfigRequest) -> pb.StorageConfig: ...

    async def acquire_unloaded_base_model(
        self, message: pb.AcquireUnloadedBaseModelRequest
    ) -> pb.AcquireUnloadedBaseModelResponse: ...

    async def acquire_unloaded_model(
        self, message: pb.AcquireUnloadedModelRequest
    ) -> pb.AcquireUnloadedModelResponse: ...

    async def update_base_model_loading_status(
        self, message: pb.UpdateBaseModelLoadingStatusRequest
    ) -> pb.UpdateBaseModelLoadingStatusResponse: ...

    async def update_model_loading_status(
        self, message: pb.UpdateModelLoadingStatusRequest
    ) -> pb.UpdateModelLoadingStatusResponse: ...

    async def create_base_model(self, message: pb.CreateBaseModelRequest) -> pb.BaseModel: ...

    async def get_base_model_path(self, message: pb.GetBaseModelPathRequest) -> pb.GetBaseModelPathResponse: ...

    async def create_hf_model_repo(self, message: pb.CreateHfModelRepoRequest) -> pb.HfModelRepo: ...

    async def get_hf_model_repo(self, message: pb.GetHfModelRepoRequest) -> pb.HfModelRepo: ...

    async def register_model(self, message: pb.RegisterModelRequest) -> pb.RegisterModelResponse: ...

    async def publish_model(self, message: pb.PublishModelRequest) -> pb.PublishModelResponse: ...

    async def get_model_path(self, message: pb.GetModelPathRequest) -> pb.GetModelPathResponse: ...

    async def find_stored_content(self, message: pb.FindStoredContentRequest) -> pb.FindStoredContentResponse: ...
