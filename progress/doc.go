// Package progress shows how far a training run has got: one plain line per log
// interval (step, loss, tokens/s, elapsed, ETA), or, when the output is a
// terminal, a live bar redrawn in place with a carriage return:
//
//	[=========>          ] 312/600 loss 2.3100 4,210 tok/s 00:41 ETA 00:38
//
// The single-process trainer and a rank-0 worker each drive a Printer from their
// training loop; cmd/ringtrain hands them its standard output. Line and Bar are
// the pure formatting functions; New decides between them with
// Options.Terminal, which tests replace.
//
// # Usage
//
//	p := progress.New(os.Stdout, progress.Options{Steps: 600, StartStep: 0, Every: 25})
//	for step := ...; ; {
//		... train ...
//		tokens += stepTokens
//		p.Update(progress.Status{Step: step + 1, Tokens: tokens, Loss: loss})
//		if evaluated {
//			p.Println(fmt.Sprintf("step %d  val loss %.4f", step+1, vl))
//		}
//	}
//	p.Finish()
package progress
