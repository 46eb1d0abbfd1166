"""augbench: does this data-augmentation method make offline RL better, and does its data obey the dynamics?"""

__version__ = "0.1.0"
