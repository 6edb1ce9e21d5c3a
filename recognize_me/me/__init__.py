"""In: the user's photos and a CelebA base model. Out: face-aligned photos, their checked splits, the
transfer models ('is this me?'), me_report.html, and prediction on new photos.
"""
