

def test_signature_known_without_loading_matches_the_built_bundle():
    from framework.data import build_datasets, dataset_signature

    for name, kwargs in (("digits", {}), ("synthetic", {"shape": (2, 5, 5), "num_classes": 3})):
        bundle = build_datasets(name, train_size=8, val_size=4, **kwargs)
        assert dataset_signature(name, **kwargs) == (bundle.num_classes, tuple(bundle.input_shape))
