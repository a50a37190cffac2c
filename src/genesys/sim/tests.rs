//! Unit tests of the Sim over real HTTP.
