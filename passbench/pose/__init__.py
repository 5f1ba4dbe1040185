"""passbench.pose: the 3DMPPE evaluation pipeline and training targets for the pose models.

    crop.py      crop_affine / crop_image / to_input: the person box -> the model's input patch
    decode.py    MapSpec, predict (optional flip test), to_image (box + GT root depth), to_camera (f, c)
    evaluate.py  evaluate(coords, frames, protocol, spec) -> PoseResult (MPJPE / PA-MPJPE / P-MPJPE, per action)
    targets.py   coord_targets (GT joints -> output-map x, y px and z bin) and coord_l1_loss (upstream L1)

Inputs are ``passbench.datasets.h36m`` frames and ``passbench.models.pose`` models (their
``coords`` contract); metrics come from ``passbench.metrics.pose``.
"""
