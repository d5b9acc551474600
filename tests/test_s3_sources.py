"""`s3_prefix` sources against moto's S3 server: listing rules, reading, and errors."""

from __future__ import annotations

import pytest

from flux_depth_assets.config.models import S3PrefixSource
from flux_depth_assets.sources import SourceError, list_objects
from tests import images


def test_lists_matching_objects_under_the_prefix_with_identity(s3_env):
    jpg = images.jpeg(seed=1)
    s3_env.put("uploads/a.jpg", jpg)
    s3_env.put("uploads/sub/b.PNG", images.png(seed=2))
    s3_env.put("uploads/notes.txt", b"not an image")
    s3_env.put("uploads/.partial/c.jpg", b"half")
    s3_env.put("uploads/sub/.d.jpg", b"hidden")
    s3_env.put("uploads/", b"")  # a console-made "folder" marker
    s3_env.put("uploads2/e.jpg", jpg)  # shares the string prefix, not the folder
    s3_env.put("f.jpg", jpg)

    objs = list_objects(S3PrefixSource(bucket=s3_env.bucket, prefix="/uploads"))

    assert [o.key for o in objs] == ["a.jpg", "sub/b.PNG"]
    a = objs[0]
    assert a.uri == f"s3://{s3_env.bucket}/uploads/a.jpg"
    assert a.size == len(jpg) and a.mtime > 0 and len(a.etag) == 32 and '"' not in a.etag
    assert a.read() == jpg


def test_whole_bucket_and_custom_include(s3_env):
    s3_env.put("x/a.jpg", b"1")
    s3_env.put("b.webp", b"2")
    objs = list_objects(S3PrefixSource(bucket=s3_env.bucket, include=["*.webp"]))
    assert [o.key for o in objs] == ["b.webp"]


def test_more_than_one_page(s3_env):
    s3_env.bulk_put(f"p/{i:05d}.jpg" for i in range(1005))
    objs = list_objects(S3PrefixSource(bucket=s3_env.bucket, prefix="p"))
    assert len(objs) == 1005 and objs[-1].key == "01004.jpg"


def test_missing_bucket_is_a_source_error_naming_it(s3_env):
    with pytest.raises(SourceError, match="s3://no-such-bucket-x/in/.*NoSuchBucket"):
        list_objects(S3PrefixSource(bucket="no-such-bucket-x", prefix="in"))


def test_prefix_is_normalised_and_bad_names_refused():
    assert S3PrefixSource(bucket="b-1", prefix="/a/b/").prefix == "a/b/"
    assert S3PrefixSource(bucket="b-1", prefix="").prefix == ""
    for bad in ({"bucket": "s3://b"}, {"bucket": "B"}, {"bucket": "ok-b", "prefix": "a/../b"}):
        with pytest.raises(ValueError):
            S3PrefixSource(**bad)
