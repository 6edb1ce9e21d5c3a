"""CelebA in: the attribute, partition and identity files and the image folder. Out: typed tables,
an image manifest, Great Expectations results, seeded splits and tf.data pipelines (plus the decoded-image cache).
"""
