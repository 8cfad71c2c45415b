"""``camstream eval``: how private and how useful an anonymized video is.

Measured with models the pipeline does not use (CenterFace for faces, dlib's ResNet
for identities), so that the pipeline is not graded by its own detector:

* :mod:`.privacy` - leak rate (a face still found at the same place) and
  re-identification (the same person by face embedding).
* :mod:`.utility` - temporal flicker (warping error), background PSNR/SSIM.
* :mod:`.evaluate` - one pass over the original and any number of outputs.
* :mod:`.compare` - run several methods on one clip and evaluate them side by side.

Import from the modules (``from streamer.evaluation.evaluate import evaluate``): this
package is loaded to register ``camstream eval`` on every call, and .evaluate pulls in
the tracker and SciPy (half a second).
"""
