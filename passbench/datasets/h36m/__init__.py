"""Human3.6M in the 3DMPPE / MobileHumanPose annotation layout, iterated as video streams.

Layout (``<data_root>/Human36M``; REFERENCE.md 3.1; upstream ``tool/Human36M/h36m2coco.py`` and
``data/Human36M/Human36M.py`` of mks0601/3DMPPE_POSENET_RELEASE, identical in MobileHumanPose)::

    annotations/Human36M_subject{s}_data.json      COCO-style {images, annotations}
    annotations/Human36M_subject{s}_camera.json    {"<cam>": {R, t, f, c}}
    annotations/Human36M_subject{s}_joint_3d.json  {"<action>": {"<subaction>": {"<frame>": 17x3 world mm}}}
    images/s_XX_act_XX_subact_XX_ca_XX/s_XX_act_XX_subact_XX_ca_XX_%06d.jpg   (frame_idx + 1)

passbench extension (synthetic data only): an image entry may carry ``"camera": {R, t, f, c}``, the
camera of that frame, for a moving camera; it overrides ``camera.json`` for that frame. Real
Human3.6M has no such field (four static cameras) and loads exactly as upstream.

Streams are keyed (subject, action, subaction, camera) and hold *all* frames in frame order, because
temporal gates (PASS, Skip-Conv) need consecutive frames; each frame carries ``evaluate``, true on
the protocol's frames (``frame_idx % stride == 0``: 64 for the MHP/3DMPPE test split, 5 for their
train split, every frame for the VideoPose3D protocols). A model therefore runs on the whole stream
and only the flagged frames are scored.

The two incompatible "protocol" numberings are selectable by unambiguous names (:data:`PROTOCOLS`):

==========  =========  ======================  ==========  ===========================================
name        metric     train subjects          test        frames scored
==========  =========  ======================  ==========  ===========================================
mhp-p1      pa_mpjpe   S1,5,6,7,8,9            S11         every 64th (3DMPPE/MHP "Protocol 1")
mhp-p2      mpjpe      S1,5,6,7,8              S9,S11      every 64th (3DMPPE/MHP "Protocol 2")
vp3d-p1     mpjpe      S1,5,6,7,8              S9,S11      all (VideoPose3D/Martinez "Protocol #1")
vp3d-p2     p_mpjpe    S1,5,6,7,8              S9,S11      all (VideoPose3D "Protocol #2", with scale)
==========  =========  ======================  ==========  ===========================================

The ``metric`` strings are the keys of ``passbench.metrics.pose.METRICS`` (this package does not
import the metrics: ``datasets/`` and ``metrics/`` know nothing of each other; the runner wires them).

Files (each imports only those above it; this ``__init__`` is the public face)::

    protocols.py  joints, actions, PROTOCOLS / get_protocol, PAPER_TABLE2 (the paper's action columns)
    layout.py     folder / image names, the json and image readers, H36MFormatError
    geometry.py   Camera (world -> camera -> pixel), add_thorax, process_bbox
    streams.py    StreamKey, Frame, Stream, Human36M (a protocol's split as video streams)
"""

from passbench.datasets.h36m.geometry import Camera, add_thorax, process_bbox
from passbench.datasets.h36m.layout import (CAMERA_FIELD, SKIP_FOLDERS, H36MFormatError, folder_name, image_name,
                                            load_json, read_image)
from passbench.datasets.h36m.protocols import (ACTION_NAMES, EVAL_JOINTS, FLIP_PAIRS, JOINT_NAMES, JOINT_NAMES_18,
                                               L_SHOULDER, PAPER_PROTOCOL, PAPER_TABLE2, PAPER_TABLE2_NOTE,
                                               PROTOCOL_ALIASES, PROTOCOLS, R_SHOULDER, ROOT, SKELETON, SUBJECTS,
                                               PaperAction, Protocol, action_index, action_name, get_protocol,
                                               paper_table2_rows)
from passbench.datasets.h36m.streams import Frame, Human36M, Stream, StreamKey

__all__ = ["ACTION_NAMES", "CAMERA_FIELD", "EVAL_JOINTS", "FLIP_PAIRS", "JOINT_NAMES", "JOINT_NAMES_18",
           "L_SHOULDER", "PAPER_PROTOCOL", "PAPER_TABLE2", "PAPER_TABLE2_NOTE", "PROTOCOLS", "PROTOCOL_ALIASES",
           "R_SHOULDER", "ROOT", "SKELETON", "SKIP_FOLDERS", "SUBJECTS", "Camera", "Frame", "H36MFormatError",
           "Human36M", "PaperAction", "Protocol", "Stream", "StreamKey", "action_index", "action_name", "add_thorax",
           "folder_name", "get_protocol", "image_name", "load_json", "paper_table2_rows", "process_bbox", "read_image"]
