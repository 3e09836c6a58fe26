import gzip
import os
import threading

import pytest

from multimodal.sagemaker.channels import read_channel, validate_input_data_config
from multimodal.errors import UserError
from multimodal.sagemaker.paths import SageMakerPaths

CSV = "ID,x_num,label\n1,1.5,a\n2,2,b\n"


@pytest.mark.parametrize("mode", ["File", "FastFile"])
def test_file_modes_read_every_csv_and_gz_file(tmp_path, mode):
    paths = SageMakerPaths(tmp_path)
    directory = paths.channel_dir("train")
    directory.mkdir(parents=True)
    (directory / "a.csv").write_text(CSV)
    with gzip.open(directory / "b.csv.gz", "wt") as handle:
        handle.write(CSV)
    (directory / ".hidden.csv").write_text("junk")
    (directory / "_SUCCESS").write_text("")
    (directory / "part").mkdir()
    (directory / "part" / "part-00000").write_text(CSV)
    table = read_channel(paths, "train", {"TrainingInputMode": mode}).frame
    assert table["ID"].tolist() == ["1", "2", "1", "2", "1", "2"]


@pytest.mark.parametrize("compressed", [False, True])
def test_pipe_mode_reads_the_fifo_once_and_drops_every_object_header(tmp_path, compressed):
    """Pipe mode streams S3 objects one after another: each one's header arrives as a line of the stream
    (gzip objects as one multi-member gzip stream)."""
    paths = SageMakerPaths(tmp_path)
    pipe = paths.channel_pipe("train")
    pipe.parent.mkdir(parents=True)
    os.mkfifo(pipe)
    objects = [CSV.encode(), b"ID,x_num,label\n3,3,b\n"]
    payload = b"".join(gzip.compress(o) for o in objects) if compressed else b"".join(objects)

    def feed():
        with open(pipe, "wb") as handle:
            handle.write(payload)

    threading.Thread(target=feed, daemon=True).start()
    settings = {"TrainingInputMode": "Pipe", "CompressionType": "Gzip" if compressed else "None"}
    assert read_channel(paths, "train", settings).frame["label"].tolist() == ["a", "b", "b"]


def test_pipe_errors_name_the_line_of_the_stream(tmp_path):
    paths = SageMakerPaths(tmp_path)
    pipe = paths.channel_pipe("train")
    pipe.parent.mkdir(parents=True)
    os.mkfifo(pipe)
    threading.Thread(target=lambda: pipe.write_text("x_num,label\n1,a\nx_num,label\nbad,b\n"), daemon=True).start()
    with pytest.raises(UserError, match=r"Pipe mode stream\) line 4, column 'x_num': 'bad' is not a number"):
        read_channel(paths, "train", {"TrainingInputMode": "Pipe"})


@pytest.mark.parametrize("config, words", [
    ({}, "the 'train' channel is required"),
    ({"train": {}, "test": {}}, "unknown channel(s) ['test']"),
    ({"train": {"TrainingInputMode": "Stream"}}, "input mode 'Stream' is not supported"),
    ({"train": {"ContentType": "application/x-parquet"}}, "content type 'application/x-parquet' is not supported"),
    ({"train": {"CompressionType": "Zip"}}, "compression 'Zip' is not supported"),
    ({"train": {"TrainingInputMode": "Pipe", "RecordWrapperType": "Protobuf"}}, "RecordWrapperType 'Protobuf'"),
    ({"train": {"RecordWrapperType": "RecordIO"}}, "RecordWrapperType RecordIO applies in Pipe mode only"),
    ({"train": {"TrainingInputMode": "Pipe", "S3DataType": "AugmentedManifestFile"}},
     "an AugmentedManifestFile with RecordWrapperType None streams its attributes with nothing between them"),
    ({"train": {"AttributeNames": ["source-ref"]}}, "an AugmentedManifestFile streams in Pipe mode only"),
    ({"train": {}, "validation": {"S3DistributionType": "ShardedByS3Key"}},
     "channel 'validation': S3DataDistributionType ShardedByS3Key on 2 instances"),
])
def test_input_data_config_is_checked(config, words):
    with pytest.raises(UserError) as error:
        validate_input_data_config(config, hosts=2)
    assert words in str(error.value)


def test_valid_config_passes_and_missing_directory_fails(tmp_path):
    both = {"train": {"ContentType": "text/csv"}, "validation": {}}
    assert validate_input_data_config(both) == both
    sharded = {"train": {"S3DataDistributionType": "ShardedByS3Key"}}
    assert validate_input_data_config(sharded, hosts=1) == sharded, "one host reads every shard"
    assert validate_input_data_config(sharded, hosts=2) == sharded, "the leader gathers the shards of 'train'"
    with pytest.raises(UserError, match="directory .* does not exist"):
        read_channel(SageMakerPaths(tmp_path), "train", {"TrainingInputMode": "File"})


def test_root_comes_from_sagemaker_base_dir():
    assert SageMakerPaths.from_environment({}).root.as_posix() == "/opt/ml"
    paths = SageMakerPaths.from_environment({"SAGEMAKER_BASE_DIR": "/tmp/x"})
    assert paths.hyperparameters_file.as_posix() == "/tmp/x/input/config/hyperparameters.json"
    assert paths.failure_file.as_posix() == "/tmp/x/output/failure"
    assert paths.channel_pipe("train").as_posix() == "/tmp/x/input/data/train_0"


def test_image_files_beside_the_csv_files_are_not_read_as_data(tmp_path):
    import base64

    from synthetic import jpeg_base64

    paths = SageMakerPaths(tmp_path)
    channel = paths.channel_dir("train")
    (channel / "images").mkdir(parents=True)
    (channel / "part-0.csv").write_text("x_num,photo_image,label\n1,images/a.jpg,a\n2,images/b,b\n")
    (channel / "bmi.csv").write_text("BMI_num,photo_image,label\n3,,a\n")   # "BM": a bitmap's first letters
    (channel / "images" / "a.jpg").write_bytes(base64.b64decode(jpeg_base64((1, 2, 3))))
    (channel / "images" / "b").write_bytes(base64.b64decode(jpeg_base64((1, 2, 3), fmt="PNG")))   # no extension
    from multimodal.sagemaker.csv_input import list_data_files

    assert [p.name for p in list_data_files(channel)] == ["bmi.csv", "part-0.csv"]


def test_image_paths_are_refused_where_the_files_cannot_be_beside_the_rows(tmp_path):
    from multimodal.sagemaker.channels import read_channels

    paths = SageMakerPaths(tmp_path)
    channel = paths.channel_dir("train")
    channel.mkdir(parents=True)
    (channel / "part-0.csv").write_text("x_num,photo_image,label\n1,,a\n2,images/b.png,b\n")
    sharded = {"train": {"TrainingInputMode": "File", "S3DistributionType": "ShardedByS3Key"}}
    with pytest.raises(UserError, match=r"channel 'train' \(ShardedByS3Key\), data row 2, column 'photo_image': "
                                        r"'images/b.png' is an image path, but ShardedByS3Key deals each S3 object"):
        read_channels(paths, sharded, gather=lambda own: own)
    train, _ = read_channels(paths, {"train": {"TrainingInputMode": "File"}})   # one host: read as it is
    assert train["photo_image"].tolist()[1] == "images/b.png"


def test_a_recordio_file_in_file_mode_fails_naming_it(tmp_path):
    from multimodal.sagemaker.recordio import frame_records

    paths = SageMakerPaths(tmp_path)
    directory = paths.channel_dir("train")
    directory.mkdir(parents=True)
    (directory / "train.rec").write_bytes(b"".join(frame_records([CSV.encode()])))
    with pytest.raises(UserError, match=r"train.rec: RecordIO-framed records; this algorithm reads them from a "
                                        r"Pipe-mode channel"):
        read_channel(paths, "train", {"TrainingInputMode": "File"})
