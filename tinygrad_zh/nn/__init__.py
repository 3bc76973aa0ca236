"""Neural-network building blocks: Module, Parameter, layers, functional, init."""
