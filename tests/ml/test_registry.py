from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ml.errors import FeatureMismatchError, ModelLoadError, RegistryError
from ml.features import CHURN, LEAD
from ml.inference import load_model
from ml.registry import Registry, parse_ref
from ml.training.pipeline import TrainResult, synthetic_training_data, train
from tests.ml.helpers import SMALL


@pytest.fixture
def copy(trained: dict[str, TrainResult], registry: Registry, tmp_path: Path) -> Registry:
    """A private registry holding a copy of churn:1, safe to damage."""
    shutil.copytree(registry.root / "churn", tmp_path / "churn")
    return Registry(tmp_path)


def test_references() -> None:
    assert parse_ref("churn") == ("churn", None)
    assert parse_ref("churn-telco:12") == ("churn-telco", 12)
    for bad in ("Churn", "churn:x", "", "../x"):
        with pytest.raises(RegistryError):
            parse_ref(bad)


def test_new_versions_record_their_parent_and_are_promoted_only_on_request(copy: Registry) -> None:
    data = synthetic_training_data("win", 600, seed=9)
    second = train("win", data, copy, name="churn-win", hp=SMALL)
    assert (second.manifest.version, second.manifest.parent_version) == (1, None)
    third = train("win", data, copy, name="churn-win", hp=SMALL)
    assert (third.manifest.version, third.manifest.parent_version) == (2, 1)
    assert copy.promoted("churn-win") == 1
    assert copy.resolve("churn-win").version == 1
    copy.promote("churn-win", 2)
    assert copy.resolve("churn-win").version == 2
    assert (
        third.manifest.training_data["fingerprint"] == second.manifest.training_data["fingerprint"]
    )


def test_unknown_versions_and_unpromoted_models_are_errors(copy: Registry) -> None:
    with pytest.raises(RegistryError, match="no model churn:9"):
        copy.promote("churn", 9)
    (copy.root / "churn" / "promoted").unlink()
    with pytest.raises(RegistryError, match="no promoted version"):
        copy.resolve("churn")


def test_a_corrupt_model_file_fails_at_load_naming_the_file(copy: Registry) -> None:
    path = copy.directory("churn", 1) / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="corrupt or mismatched") as error:
        load_model(copy, "churn")
    assert str(path) in str(error.value)


def test_an_unloadable_file_with_a_matching_checksum_fails_naming_the_file(copy: Registry) -> None:
    import hashlib

    folder = copy.directory("churn", 1)
    (folder / "model.onnx").write_bytes(b"not an onnx model")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["onnx"]["sha256"] = hashlib.sha256(b"not an onnx model").hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load") as error:
        load_model(copy, "churn:1")
    assert "model.onnx" in str(error.value)


def test_a_missing_model_file_fails_naming_it(copy: Registry) -> None:
    (copy.directory("churn", 1) / "model.onnx").unlink()
    with pytest.raises(ModelLoadError, match="model file missing"):
        load_model(copy, "churn")


def test_a_model_file_that_does_not_match_its_manifest_is_refused(copy: Registry) -> None:
    folder = copy.directory("churn", 1)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["features"] = manifest["features"][:-1]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        ModelLoadError, match=r"do not match its manifest.*unexpected engagement_level"
    ):
        load_model(copy, "churn")


def test_a_model_whose_inputs_differ_from_the_feature_definition_is_refused(copy: Registry) -> None:
    with pytest.raises(
        FeatureMismatchError, match=r"feature definition 'lead'.*missing number_of_employees"
    ):
        load_model(copy, "churn", LEAD)
    assert load_model(copy, "churn", CHURN).version == 1
