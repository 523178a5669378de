package dkim
