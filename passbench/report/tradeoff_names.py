"""The trade-off's method stems in table / legend order and their labels (shared by the tables and the figure)."""

# the gate variants (passbench's, every-conv experiment only: one gate per block, half-resolution gates, gates only
# where the engine skips) last: the others keep their figure colours
ORDER = ["pass_f", "pass_p", "pass_f_uniform", "pass_p_uniform", "skipconv_norm", "skipconv_gumbel", "random", "keyframe",
         "pass_p_block", "pass_p_block_uniform", "pass_p_shared", "pass_p_shared_uniform",
         "pass_p_half", "pass_p_half_uniform", "pass_p_half_shared", "pass_p_half_shared_uniform",
         "pass_p_trim", "pass_p_half_trim", "pass_p_half_shared_trim"]
LABELS = {"pass_f": "PASS-F", "pass_p": "PASS-P", "pass_f_uniform": "PASS-F, uniform rates",
          "pass_p_uniform": "PASS-P, uniform rates",
          "pass_p_block": "PASS-P block gates, one per block, trained so (variant)",
          "pass_p_shared": "PASS-P gates shared per block (variant)",
          "pass_p_block_uniform": "PASS-P block gates, uniform rates (variant)",
          "pass_p_shared_uniform": "PASS-P gates shared per block, uniform rates (variant)",
          "pass_p_half": "PASS-P half-resolution gates (variant)",
          "pass_p_half_uniform": "PASS-P half-resolution gates, uniform rates (variant)",
          "pass_p_half_shared": "PASS-P half-resolution gates shared per block (variant)",
          "pass_p_half_shared_uniform": "PASS-P half-resolution gates shared per block, uniform rates (variant)",
          "pass_p_trim": "PASS-P, gates only where the engine skips (variant)",
          "pass_p_half_trim": "PASS-P half-resolution gates, only where the engine skips (variant)",
          "pass_p_half_shared_trim": "PASS-P half-resolution gates shared per block, only where the engine skips (variant)",
          "skipconv_norm": "Skip-Conv (norm gates)",
          "skipconv_gumbel": "Skip-Conv (Gumbel gates)", "random": "random (floor)", "keyframe": "keyframe (floor)",
          "dense": "dense", "gate_small": "PASS-P, passbench gate (16 ch, 2 blocks, per-patch head)",
          "gate_paper": "PASS-P, authors' gate sizes (256 ch, 4 blocks, k9, affine head)",
          "rate0": "PASS-P, no rate term in pre-training",
          "dense_ft": "dense fine-tune control (PASS-F's lr 1e-4 recipe, every rate 0)"}
