"""Reading labeled text, splitting it, and turning it into padded batches."""

from stepwise.data.readers import read_examples
from stepwise.data.split import stratified_split
from stepwise.example import Example

__all__ = ["Example", "read_examples", "stratified_split"]
