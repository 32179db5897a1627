# HAT overlay: inherit it beside any mmpretrain classifier recipe,
#   _base_ = ['mmpretrain::<recipe>.py', '<path to>/configs/_base_/hat.py']
# and that recipe trains with HAT. The HATRunner turns ImageClassifier/TimmClassifier into
# its HAT subclass, copies `hat` into `model.hat`, appends HATPhaseHook to custom_hooks and
# uses HATDistributedDataParallel under distributed training (hat_mm/engine/hat_runner.py).
custom_imports = dict(imports=['hat_mm'], allow_failed_imports=False)
runner_type = 'HATRunner'

# Official defaults (the official code's --adv-* flags; docs/hat_update.md).
hat = dict(
    adv_iters=3,  # K: forward/backward passes per batch
    adv_eps=0.00784314,  # 2/255, L-inf bound, in the normalised input space
    adv_lr=1 / 255,  # sign-gradient step size
    adv_kl_weight=0.01,  # symmetric-KL weight
    adv_ce_weight=3.0,  # weight of the CE on perturbed inputs
    adv_epochs=200,  # adversarial phase length; afterwards K = 1
    kl_after_adv=True,  # keep clean forward + KL after adv_epochs (official behaviour)
)
