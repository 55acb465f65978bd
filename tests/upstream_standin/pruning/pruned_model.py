from models.base import Model


class PrunedModel(Model):
    """A model whose pruned weights are zeroed before every forward pass."""

    def __init__(self, model, mask):
        super().__init__()
        self.model = model
        for k, v in mask.items():
            self.register_buffer('mask_' + k.replace('.', '___'), v.float())
        self._apply_mask()

    def _apply_mask(self):
        for name, param in self.model.named_parameters():
            key = 'mask_' + name.replace('.', '___')
            if hasattr(self, key):
                param.data *= getattr(self, key)

    def forward(self, x):
        self._apply_mask()
        return self.model(x)

    prunable_layer_names = property(lambda self: self.model.prunable_layer_names)
    output_layer_names = property(lambda self: self.model.output_layer_names)
    loss_criterion = property(lambda self: self.model.loss_criterion)

    def save(self, save_location, save_step):
        self.model.save(save_location, save_step)

    is_valid_model_name = staticmethod(lambda name: False)
    get_model_from_name = staticmethod(lambda *a: None)
    default_hparams = staticmethod(lambda: None)
