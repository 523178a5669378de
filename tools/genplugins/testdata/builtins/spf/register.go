package spf
