"""Adds the ``mean-color`` loss term: ‖mean_rgb(G) − mean_rgb(S)‖², blended over style images.

A pixel-space ("image") term: it pulls the average colour of the result toward the style's.
"""

from nst_core import LossTerm, hookimpl


class MeanColorLoss(LossTerm):
    role = "image"

    def __init__(self, power: float = 2.0):
        self.power = float(power)

    def bind(self, targets):
        target = sum(w * s.mean(dim=(0, 2, 3)) for w, s in zip(targets.style_weights, targets.style_images))
        power = self.power

        def loss(image, features, layer_weights):
            return (image.mean(dim=(0, 2, 3)) - target).abs().pow(power).sum()

        return loss


@hookimpl
def nst_register_loss_terms(register):
    register("mean-color", MeanColorLoss, description="pulls the mean colour toward the style's (example plug-in)")
