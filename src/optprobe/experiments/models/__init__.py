"""Small, readable PyTorch models for optprobe experiments (MLP, CNNs, ResNets, GPT, BERT, HF wrappers)."""

from optprobe.experiments.models.bert import BertMLM
from optprobe.experiments.models.cnn import CNN1D, SmallCNN
from optprobe.experiments.models.gpt import GPT
from optprobe.experiments.models.mlp import MLP
from optprobe.experiments.models.resnet import ResNet, resnet18, resnet_cifar

__all__ = ["MLP", "SmallCNN", "CNN1D", "ResNet", "resnet_cifar", "resnet18", "GPT", "BertMLM"]
