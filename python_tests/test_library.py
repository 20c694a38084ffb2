"""The compiled library loads and registers its namespace."""

import torch

import srkd_ext


def test_kernels_load():
    assert srkd_ext.kernels_available(), "srkd_ext._C did not load: build with `make build`"
    assert isinstance(torch.ops.srkd_ext.compiled_with_cuda(), bool)


def test_cuda_flag_matches_torch():
    # A CPU-only torch can never have produced CUDA kernels.
    if torch.version.cuda is None:
        assert not srkd_ext.cuda_kernels_available()
