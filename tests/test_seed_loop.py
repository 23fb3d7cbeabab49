"""The seed document's training loop runs as written on our DDPMScheduler and UNet.

``seed_training_loop`` below is the code block of seed/000_6e4a9f03fe88f3ca.txt copied
verbatim, wrapped in a function so the test can pass in the model, the data and the
scheduler class. The one change: ``range(30)`` epochs became ``range(num_epochs)`` so the
test runs a handful of steps. Everything else, ``loss.backward(loss)`` included, is as written.
"""

import pytest
import torch
import torch.nn.functional as F

from ddpm_helpers.data import DigitsDataset, make_dataloader
from ddpm_helpers.scheduler import DDPMScheduler
from ddpm_helpers.unet import UNet


def seed_training_loop(model, train_dataloader, device, DDPMScheduler, num_epochs):
    # Set the noise scheduler
    noise_scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"
    )

    # Training loop
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4)

    losses = []

    for epoch in range(num_epochs):  # the seed: range(30)
        for step, batch in enumerate(train_dataloader):
            clean_images = batch["images"].to(device)
            # Sample noise to add to the images
            noise = torch.randn(clean_images.shape).to(clean_images.device)
            bs = clean_images.shape[0]

            # Sample a random timestep for each image
            timesteps = torch.randint(
                0, noise_scheduler.num_train_timesteps, (bs,), device=clean_images.device
            ).long()

            # Add noise to the clean images according to the noise magnitude at each timestep
            noisy_images = noise_scheduler.add_noise(clean_images, noise, timesteps)

            # Get the model prediction
            noise_pred = model(noisy_images, timesteps, return_dict=False)[0]

            # Calculate the loss
            loss = F.mse_loss(noise_pred, noise)
            loss.backward(loss)
            losses.append(loss.item())

            # Update the model parameters with the optimizer
            optimizer.step()
            optimizer.zero_grad()

        if (epoch + 1) % 5 == 0:
            loss_last_epoch = sum(losses[-len(train_dataloader) :]) / len(train_dataloader)
            print(f"Epoch:{epoch+1}, loss: {loss_last_epoch}")
    return losses


class Recorder(torch.nn.Module):
    """Wraps a model and keeps a copy of every (noisy_images, timesteps) it is called with."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, x, t, return_dict=None):
        self.calls.append((x.detach().clone(), t.clone()))
        return self.model(x, t, return_dict=return_dict)


def tiny_unet():
    return UNet(sample_size=16, block_out_channels=(8, 16), norm_num_groups=4, attention_head_dim=8)


@pytest.fixture(scope="module")
def dataset():
    return DigitsDataset(n=32, image_size=16)


def run(scheduler_class, dataset, num_epochs=5):
    """The seed's loop from a fixed state: same seed, same initial weights, same batch order."""
    torch.manual_seed(0)
    model = Recorder(tiny_unet())
    before = [p.detach().clone() for p in model.parameters()]
    train_dataloader = make_dataloader(dataset, batch_size=16, seed=0)  # 2 steps per epoch
    losses = seed_training_loop(model, train_dataloader, torch.device("cpu"), scheduler_class, num_epochs)
    return model, before, losses


def test_seed_loop_runs_as_written(dataset, capsys):
    model, before, losses = run(DDPMScheduler, dataset)
    assert len(losses) == 5 * 2
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters())), "weights did not change"
    assert "Epoch:5, loss: " in capsys.readouterr().out


# the seed reads noise_scheduler.num_train_timesteps, which diffusers now deprecates
@pytest.mark.filterwarnings("ignore:Accessing config attribute")
def test_seed_loop_same_noisy_images_as_diffusers(dataset):
    diffusers = pytest.importorskip("diffusers")
    ours, _, _ = run(DDPMScheduler, dataset, num_epochs=1)
    theirs, _, _ = run(diffusers.DDPMScheduler, dataset, num_epochs=1)
    assert len(ours.calls) == len(theirs.calls) == 2
    for (x_ours, t_ours), (x_theirs, t_theirs) in zip(ours.calls, theirs.calls):
        assert torch.equal(t_ours, t_theirs)
        torch.testing.assert_close(x_ours, x_theirs)
