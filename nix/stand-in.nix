# A minimal stand-in for nixpkgs' buildGoModule that records its
# arguments, so that package.nix is parsed and evaluated where nixpkgs is
# not (nix/nix_test.go). It is not a build: on a host with nixpkgs,
# callPackage ./package.nix builds the package for real.
import ./package.nix { buildGoModule = args: args; }
