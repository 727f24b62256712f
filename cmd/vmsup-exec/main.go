// Command vmsup-exec turns itself into one service of a VM; vmsup starts
// it, never a user. See package launcher.
//
// It owns nothing but main, and must link nothing beyond package launcher:
// its size and start-up are part of every launch's cost.
package main

import "vmsup/services/launcher"

func main() { launcher.Exec() }
