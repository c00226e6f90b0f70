"""Reading weight files (models/weight_files.py): converting while reading, files cut short,
the one .safetensors check of every weights output."""
import pytest
import torch
from safetensors.torch import save_file

from word2scene.errors import InputError
from word2scene.files import check_safetensors
from word2scene.models.weight_files import read_state_dict


def test_reading_with_a_dtype_converts_tensor_by_tensor(tmp_path):
    """Converting on read (bf16 training) streams the file instead of mapping it; same values."""
    from safetensors import safe_open

    gen = torch.Generator().manual_seed(0)
    tensors = {"b.weight": torch.randn(64, 32, generator=gen), "a.bias": torch.randn(7, generator=gen),
               "ids": torch.arange(5), "half": torch.randn(3, 3, generator=gen).half(), "empty": torch.zeros(0)}
    save_file(tensors, str(tmp_path / "m.safetensors"), metadata={"format": "pt", "x": "1"})
    state, metadata = read_state_dict(tmp_path / "m.safetensors", dtype=torch.bfloat16)
    assert metadata == {"format": "pt", "x": "1"} and set(state) == set(tensors)
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        for k in tensors:
            expected = f.get_tensor(k)
            expected = expected.to(torch.bfloat16) if expected.is_floating_point() else expected
            assert state[k].dtype == expected.dtype and torch.equal(state[k], expected), k
    same, _ = read_state_dict(tmp_path / "m.safetensors", dtype=torch.float32)  # half -> fp32 also streams
    assert same["b.weight"].dtype == torch.float32 and torch.equal(same["b.weight"], tensors["b.weight"])
    save_file({"w": torch.ones(4, dtype=torch.bfloat16)}, str(tmp_path / "bf.safetensors"))
    assert read_state_dict(tmp_path / "bf.safetensors", dtype=torch.bfloat16)[0]["w"].dtype == torch.bfloat16
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-100])
    with pytest.raises(InputError, match="cut.safetensors is truncated: 8538 bytes of the 8638"):
        read_state_dict(tmp_path / "cut.safetensors", dtype=torch.bfloat16)


def test_one_safetensors_check_names_the_input_the_file_and_what_is_accepted(tmp_path):
    assert check_safetensors(tmp_path / "c.SafeTensors", "concept files are safetensors") == tmp_path / "c.SafeTensors"
    with pytest.raises(InputError, match=r"^save_name: c.ckpt is not a .safetensors file; concept files are safetensors$"):
        check_safetensors(tmp_path / "c.ckpt", "concept files are safetensors", "save_name")
