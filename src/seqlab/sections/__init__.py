"""What a report's sections are made of, below every family: :mod:`seqlab.sections.blocks`
(figures, tables, samples, audio, notes), :mod:`seqlab.sections.svg` (matplotlib figures as
inline SVG) and :mod:`seqlab.sections.media` (audio as Ogg Vorbis data, abcm2ps sheet music).
Families build their sections from these; :mod:`seqlab.report` assembles the page."""
